"""conditions: turns decomposed representations into model inputs (Composer, Huang et al. 2023;
GLIGEN, Li et al. 2023). Never imports `composer`."""
