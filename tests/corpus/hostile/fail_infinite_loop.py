# question: kl-divergence
# expect: fail
# why: hostile
# reason: time limit
# graded as kl-divergence
while True:
    pass
