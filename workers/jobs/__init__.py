"""arq job functions, one module per job family."""
