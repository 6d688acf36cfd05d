"""Reconstruction methods: each is a preset config plus a Pipeline implementation (static, sparse_view, dynamic)."""
