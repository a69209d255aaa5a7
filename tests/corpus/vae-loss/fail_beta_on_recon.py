# question: vae-loss
# expect: fail
# why: weights the wrong term
# reason: expected
loss = beta * F.binary_cross_entropy(x_recon, x, reduction='sum') - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
