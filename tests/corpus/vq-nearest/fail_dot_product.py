# question: vq-nearest
# expect: fail
# why: largest dot product is not the nearest row when norms differ
# reason: closer
indices = (flat_z @ codebook.t()).argmax(1)
