# question: vae-loss
# expect: pass
# why: nn.BCELoss
criterion = nn.BCELoss(reduction="sum")
loss = criterion(x_recon, x) + beta * (-0.5) * (1 + logvar - mu ** 2 - torch.exp(logvar)).sum()
