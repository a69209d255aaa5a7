# question: codebook-sample
# expect: fail
# why: always the first 16 codes
z_q = model.codebook.weight[:16]
