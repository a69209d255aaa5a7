# question: kl-divergence
# expect: pass
# why: clamps the encoder's logvar in place for stability (a no-op on sane values), then the closed form
logvar.clamp_(-30.0, 20.0)
kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
