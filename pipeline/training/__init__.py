"""Training data for the models: clip loaders over the dataset folders (the pure training code
lives in models/train and vos/)."""
