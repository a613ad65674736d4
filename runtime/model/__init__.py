"""The model layer: model sources and loading, architectures, locations, the forward engine, GGUF."""
