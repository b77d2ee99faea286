"""Activities: the side effects that job workflows ask for."""
