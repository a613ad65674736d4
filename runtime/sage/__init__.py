"""The method's mathematics (METHOD.md sections 3 to 5): pure tensor functions, no model access."""
