# question: reparameterization-trick
# expect: fail
# why: returns the mean without sampling
z = mu
