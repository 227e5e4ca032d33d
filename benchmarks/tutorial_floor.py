"""The floor of the default run (benchmarks/bench.py): import torch and take the tutorial's 1000 full-batch
SGD steps with the update written out, so that no torch.optim class (and so no torch._dynamo) is loaded."""

import torch

inputs = torch.tensor([[1.0], [2.0], [3.0]])
labels = torch.tensor([[0.0], [0.0], [1.0]])
torch.manual_seed(2)
linear = torch.nn.Linear(1, 1)

for epoch in range(1000):  # noqa: B007 (the tutorial's loop)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(inputs), labels, reduction="sum")
    linear.zero_grad()
    loss.backward()
    with torch.no_grad():
        for parameter in linear.parameters():
            parameter -= 0.01 * parameter.grad

print("predict 4 hours:", torch.sigmoid(linear(torch.tensor([[4.0]]))).item())
