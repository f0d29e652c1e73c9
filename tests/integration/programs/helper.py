NAME = "helper-imported"
