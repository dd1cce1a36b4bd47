-- Macros used by the views: the 95 % Wilson score interval of a proportion p over n trials (clamped to [0, 1]:
-- floating-point rounding otherwise gives -3e-17 at p = 0), and the
-- chance that a uniformly random ranking of n candidates puts the true one in its first k, as a DECIMAL so
-- that avg() over it sums exactly and gives the same value on every run (a DOUBLE sum depends on thread order).
CREATE OR REPLACE MACRO wilson_lo(p, n) AS
    CASE WHEN n = 0 THEN NULL
         ELSE greatest(0.0, (p + 1.96^2 / (2 * n) - 1.96 * sqrt(p * (1 - p) / n + 1.96^2 / (4 * n^2))) / (1 + 1.96^2 / n)) END;
CREATE OR REPLACE MACRO wilson_hi(p, n) AS
    CASE WHEN n = 0 THEN NULL
         ELSE least(1.0, (p + 1.96^2 / (2 * n) + 1.96 * sqrt(p * (1 - p) / n + 1.96^2 / (4 * n^2))) / (1 + 1.96^2 / n)) END;
CREATE OR REPLACE MACRO random_topk(k, n) AS (least(k, n)::DOUBLE / n)::DECIMAL(18, 15);
