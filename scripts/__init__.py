"""Developer scripts: proto generation, the demo."""
