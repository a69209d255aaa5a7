# question: reparameterization-trick
# expect: fail
# why: scales the noise by the log-variance (seed option)
# reason: spread
z = torch.randn(mu.size()) * logvar + mu
