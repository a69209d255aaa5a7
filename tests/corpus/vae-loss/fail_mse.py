# question: vae-loss
# expect: fail
# why: squared error instead of binary cross-entropy
# reason: expected
loss = F.mse_loss(x_recon, x, reduction='sum') + beta * (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()))
