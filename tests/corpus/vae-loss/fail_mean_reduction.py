# question: vae-loss
# expect: fail
# why: averages the reconstruction term
# reason: expected
loss = F.binary_cross_entropy(x_recon, x) + beta * (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()))
