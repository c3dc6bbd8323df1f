"""Security properties: no pickles, model files from the models folder only, quoted names, escaping."""
