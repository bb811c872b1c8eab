-- The definition of one of the store's tables ($1) as text: everything the executor would honour
-- on an INSERT or UPDATE of it. src/direct.rs writes a table straight into heap and indexes only
-- while this text equals the one of the table the extension created (sql/table_definition.expected);
-- anything a user adds or changes sends appends through SQL statements instead.
-- Storage parameters (fillfactor, autovacuum settings) are left out: the heap honours them itself.
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
    SELECT format('relation kind=%s am=%s rls=%s force_rls=%s partition=%s typed=%s replica_identity=%s',
                  c.relkind, am.amname, c.relrowsecurity, c.relforcerowsecurity, c.relispartition,
                  c.reloftype <> 0, c.relreplident) AS line
    FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
    WHERE c.oid = $1
  UNION ALL
    SELECT format('column %s %s%s%s%s%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                  CASE WHEN a.attnotnull THEN ' not null' END,
                  ' collate ' || co.collname,
                  ' default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid),
                  NULLIF(' generated=' || a.attgenerated::text || a.attidentity::text, ' generated='))
    FROM pg_catalog.pg_attribute a
    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
    WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
    -- NOT NULL constraints (catalogued from PostgreSQL 18 on) are the columns' "not null" above
    SELECT format('constraint %s %s deferrable=%s deferred=%s valid=%s', conname,
                  pg_catalog.pg_get_constraintdef(oid), condeferrable, condeferred, convalidated)
    FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND contype <> 'n'
  UNION ALL
    SELECT format('index %s valid=%s ready=%s immediate=%s', pg_catalog.pg_get_indexdef(indexrelid),
                  indisvalid, indisready, indimmediate)
    FROM pg_catalog.pg_index WHERE indrelid = $1
  UNION ALL
    SELECT format('trigger %s enabled=%s function=%s:%s:%s', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled,
                  l.lanname, p.probin, p.prosrc)
    FROM pg_catalog.pg_trigger t
    JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid JOIN pg_catalog.pg_language l ON l.oid = p.prolang
    WHERE t.tgrelid = $1 AND NOT t.tgisinternal
  UNION ALL
    SELECT format('constraint trigger of %s.%s type=%s function=%s enabled=%s', k.conrelid::pg_catalog.regclass,
                  k.conname, t.tgtype, t.tgfoid::pg_catalog.regproc, t.tgenabled)
    FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_constraint k ON k.oid = t.tgconstraint
    WHERE t.tgrelid = $1 AND t.tgisinternal
  UNION ALL
    SELECT format('rule %s', pg_catalog.pg_get_ruledef(oid)) FROM pg_catalog.pg_rewrite WHERE ev_class = $1
  UNION ALL
    SELECT format('policy %s', polname) FROM pg_catalog.pg_policy WHERE polrelid = $1
  UNION ALL
    -- the function behind the pg_publication_tables view (every kind of publication), without the
    -- view's joins and column lists: planning the view was half of this query's planning time
    SELECT format('publication %s', p.pubname) FROM pg_catalog.pg_publication p
    WHERE EXISTS (SELECT FROM pg_catalog.pg_get_publication_tables(p.pubname) t WHERE t.relid = $1)
  UNION ALL
    SELECT format('inherits %s', inhparent::pg_catalog.regclass) FROM pg_catalog.pg_inherits WHERE inhrelid = $1
  UNION ALL
    SELECT format('inherited by %s', inhrelid::pg_catalog.regclass) FROM pg_catalog.pg_inherits WHERE inhparent = $1
  UNION ALL
    -- a Citus table's local relation is an empty shell: with Citus in the database, always SQL
    SELECT 'citus is installed' FROM pg_catalog.pg_extension WHERE extname = 'citus'
) d
