"""`hmtel dashboard`: a live page over the aggregate, inventory, proof and rejection topics.

``state`` folds records into a per-host model (pure); ``server`` serves the page and
streams the model's deltas to browsers over Server-Sent Events. The chart library (uPlot)
is vendored under ``static/`` with its licence: no CDN at run time.
"""
