"""placeholder: the serve command is being built."""
