"""Studies: pure functions over measurements plus thin orchestration over the engine."""
