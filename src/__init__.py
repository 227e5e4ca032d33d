"""Config-driven classification experiments: logistic regression and friends, from the toy set to MNIST."""
