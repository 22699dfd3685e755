"""The GNA operator: semantics, parameters, tiled layout, simulator and the public `gna_attention`."""
