"""On-demand view: the seasonal context of a request, computed when it is made."""

from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Float64, Int64, String

from seasonrec import schema as s
from sources import request_context
from views import (
    hemisphere_item_demand,
    item_demand,
    item_profile,
    region_item_demand,
    title_item_demand,
    user_history,
)


# Where in the year and in the holiday calendar a request falls, for this item and user.
@on_demand_feature_view(
    name=s.SEASONAL_CONTEXT,
    # Of the item profile only the launch time: its title (384 floats) is no input here, and a whole-view
    # source would make Feast join it onto every training row.
    sources=[
        request_context,
        item_demand,
        region_item_demand,
        hemisphere_item_demand,
        title_item_demand,
        item_profile[[s.LAUNCH_TS]],
        user_history,
    ],
    # No descriptions here: Feast compares them when it checks the schema against the function's output.
    schema=[
        Field(name=s.WEEK_SIN, dtype=Float64),  # sin of the week-of-year angle.
        Field(name=s.WEEK_COS, dtype=Float64),  # cos of the week-of-year angle.
        Field(name=s.DAYS_TO_HOLIDAY, dtype=Int64),  # Days to the next holiday in the request's region.
        Field(name=s.ITEM_WEEK_DEMAND, dtype=Float64),  # Item's demand this ISO week; 1.0 is an average week.
        Field(name=s.WEEK_UNITS, dtype=Float64),  # The region's weekly units around this week in earlier years.
        Field(name=s.ITEM_AGE_DAYS, dtype=Float64),  # Days since the item launched.
        Field(name=s.DEMAND_LEVEL, dtype=String),  # region, hemisphere or global: the profile demand rests on.
        Field(name=s.HISTORY_AGE_HOURS, dtype=Array(Float64)),  # Hours since each history event.
    ],
    mode="python",
)
def seasonal_context(inputs: dict) -> dict:
    from seasonrec.features.context import seasonal_context as compute

    return compute(inputs)
