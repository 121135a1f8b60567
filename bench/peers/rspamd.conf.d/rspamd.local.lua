-- bench/peers/rspamd: report Bayes' spam probability at full precision.
-- BAYES_SPAM/BAYES_HAM carry it only as a percentage with two decimals and a
-- score with six, and not at all within 0.05 of 0.5; this zero-weight
-- postfilter symbol carries the classifier's own double ("bayes_prob").
rspamd_config:register_symbol({
  name = 'BENCH_BAYES_PROB',
  type = 'postfilter',
  priority = 10,
  score = 0.0,
  group = 'statistics',
  description = 'Bayes spam probability (benchmark)',
  callback = function(task)
    local p = task:get_mempool():get_variable('bayes_prob', 'double')
    if p then
      task:insert_result('BENCH_BAYES_PROB', 0.0, string.format('%.17g', p))
    end
  end,
})
