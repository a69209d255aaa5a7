# question: vq-nearest
# expect: pass
# why: expanded squared distance written with einops, as in vector-quantize-pytorch
import einops

dist = -(
    einops.reduce(flat_z**2, "n d -> n 1", "sum")
    - 2 * einops.einsum(flat_z, codebook, "n d, k d -> n k")
    + einops.reduce(codebook**2, "k d -> k", "sum")
)
indices = dist.argmax(dim=-1)
