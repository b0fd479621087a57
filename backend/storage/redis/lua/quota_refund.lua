-- quota_refund: gives one unit back to every stored quota counter above
-- zero; with a request id, once per task (see refundQuotas).
-- KEYS: the counters' hashes. ARGV[2]: the request id, or "".
-- Returns 1 when a unit was given back, else 0.
return refundQuotas(KEYS, ARGV[2])
