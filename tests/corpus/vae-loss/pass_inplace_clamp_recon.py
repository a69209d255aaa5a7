# question: vae-loss
# expect: pass
# why: clamps the decoder's probabilities in place before the cross-entropy, as real training loops do
x_recon.clamp_(1e-7, 1 - 1e-7)
recon_loss = F.binary_cross_entropy(x_recon, x, reduction="sum")
logvar.clamp_(min=-30.0)
kl_loss = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
loss = recon_loss + beta * kl_loss
