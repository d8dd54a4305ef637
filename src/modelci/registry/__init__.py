"""Registries: references, the on-disk OCI Image Layout, and the ModelPack artifact."""
