"""Knowledge bases: datasets, their documents and files, and the rules around them."""
