"""The methods of the paper's tables: when to prune and what to prune, each a small function of a `Context`, with
its facts (family, planned epochs, cuts, options) declared once in the registry."""
