# question: kl-divergence
# expect: fail
# why: hostile
# graded as kl-divergence
raise SystemExit(0)
