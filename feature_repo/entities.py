"""Entities: the keys every feature is looked up by."""

from feast import Entity, ValueType

from seasonrec import schema as s

# A shopper, by the shop's own customer id.
user = Entity(name="user", join_keys=[s.USER_ID], value_type=ValueType.STRING, description="A shopper.")

# A product, by its stock code.
item = Entity(name="item", join_keys=[s.ITEM_ID], value_type=ValueType.STRING, description="A product.")

# Where the shopper is: an ISO 3166 country code, or ALL for the all-regions pools.
region = Entity(name="region", join_keys=[s.REGION], value_type=ValueType.STRING, description="A shopper's country.")

# ISO week of the year (1-53): the season a candidate pool is for.
week = Entity(name="week", join_keys=[s.WEEK_OF_YEAR], value_type=ValueType.INT64, description="ISO week of year.")

# Where weather seasons flip: "north" or "south" of a shopper's country (seasonrec.data.calendar).
hemisphere = Entity(
    name="hemisphere", join_keys=[s.HEMISPHERE], value_type=ValueType.STRING, description="north or south."
)
