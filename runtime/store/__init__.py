"""The store: the content-addressed artifact cache, atomic writes, results.json and its schema, user folders."""
