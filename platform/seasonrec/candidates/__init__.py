"""Candidate generation: the few hundred items a request ranks, and which source proposed each.

Serving (`serving.fetcher.FeatureReader`) and the offline replay of the service
(`model.evaluate`'s served and retrieval views) call the same functions here,
each handing in the state as of its own request.
"""
