# question: vae-loss
# expect: fail
# why: subtracts the KL term
# reason: expected
loss = F.binary_cross_entropy(x_recon, x, reduction='sum') + beta * 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
