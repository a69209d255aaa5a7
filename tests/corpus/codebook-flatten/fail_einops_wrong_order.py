# question: codebook-flatten
# expect: fail
# why: einops with the spatial axes in (w, h) order
# reason: differs from the expected values
import einops

flat_z = einops.rearrange(z, "b d h w -> (b w h) d")
