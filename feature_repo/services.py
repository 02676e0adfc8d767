"""Feature services: versioned bundles that models and the serving graph ask for by name."""

from feast import FeatureService

from on_demand import seasonal_context
from seasonrec import schema as s
from views import (
    hemisphere_item_demand,
    item_demand,
    item_neighbours,
    item_profile,
    new_arrivals,
    region_item_demand,
    region_item_trends,
    seasonal_pools,
    title_item_demand,
    user_history,
    user_item_stats,
    user_repeats,
    user_stats,
)

# Everything the ranker scores a (user, item) pair with at a moment in a region.
ranker_v1 = FeatureService(
    name=s.RANKER_SERVICE,
    features=[
        user_stats,
        user_history,
        user_item_stats,
        item_profile,
        item_demand,
        region_item_demand,
        hemisphere_item_demand,
        title_item_demand,
        region_item_trends,
        seasonal_context,
    ],
    description="Ranker inputs, version 1.",
)

# Where candidates come from: the user's own purchases, the in-season pool for a region and week, the
# neighbours of the user's recent items, and the hemisphere's new arrivals.
candidates_v1 = FeatureService(
    name=s.CANDIDATES_SERVICE,
    features=[user_repeats, seasonal_pools, item_neighbours, new_arrivals],
    description="Candidate pools, version 1.",
)
