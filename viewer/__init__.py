"""The viser web viewer: renders a splat4d scene live in the browser."""
