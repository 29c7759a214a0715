"""The neural models: layers, heads, the joint loss and the nets composed of them."""
