"""Models map a batch of inputs (N, features) to logits (N, outputs); losses pick `outputs`."""

from torch import Tensor, nn


class LogisticRegression(nn.Module):
    """The tutorial's model: one linear layer. Sigmoid/softmax are applied by the loss, not here."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.linear(inputs)


class MLP(nn.Module):
    """One hidden ReLU layer between the inputs and the logits."""

    def __init__(self, in_features: int, out_features: int, hidden_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden_size), nn.ReLU(), nn.Linear(hidden_size, out_features)
        )

    def forward(self, inputs: Tensor) -> Tensor:
        return self.layers(inputs)
