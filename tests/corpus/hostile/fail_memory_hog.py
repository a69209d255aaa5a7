# question: kl-divergence
# expect: fail
# why: hostile
# reason: memory|time limit
# graded as kl-divergence
blocks = []
while True:
    blocks.append(bytearray(50 * 1024 * 1024))
