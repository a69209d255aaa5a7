# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
while True:
    print('x' * 65536)
