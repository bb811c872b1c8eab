-- The pg_eventstore schema as comparable text: one row per object property that an upgrade must
-- get right. tests/client/tests/upgrade.rs compares an upgraded database with a fresh install.
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'pg_eventstore'),
     ns AS (SELECT 'eventstore'::regnamespace AS oid),
     rels AS (SELECT c.* FROM pg_class c, ns WHERE c.relnamespace = ns.oid)
SELECT kind, name, def FROM (
    SELECT 'schema' AS kind, nspname::text AS name, COALESCE(nspacl::text, '') AS def
    FROM pg_namespace WHERE nspname = 'eventstore'
    UNION ALL
    SELECT 'relation', relname::text,
           relkind::text || ' options=' || COALESCE(array_to_string(reloptions, ','), '') || ' acl=' || COALESCE(relacl::text, '')
    FROM rels
    UNION ALL
    SELECT 'column', c.relname || '.' || a.attname,
           a.attnum || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || COALESCE(' collate ' || NULLIF(a.attcollation, 0)::regcollation::text, '')
           || COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN rels c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'constraint', conrelid::regclass || '.' || conname, pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns)
    UNION ALL
    SELECT 'index', indexrelid::regclass::text, pg_get_indexdef(indexrelid)
    FROM pg_index WHERE indrelid IN (SELECT oid FROM rels)
    UNION ALL
    SELECT 'trigger', tgrelid::regclass || '.' || tgname, pg_get_triggerdef(oid) || ' enabled=' || tgenabled::text
    FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM rels)
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text,
           pg_get_functiondef(p.oid) || ' acl=' || COALESCE(p.proacl::text, '')
    FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns)
    UNION ALL
    SELECT 'view', relname::text, pg_get_viewdef(oid) FROM rels WHERE relkind = 'v'
    UNION ALL
    SELECT 'sequence', seqrelid::regclass::text,
           format('%s start %s increment %s min %s max %s cache %s cycle %s', format_type(seqtypid, NULL), seqstart,
                  seqincrement, seqmin, seqmax, seqcache, seqcycle)
    FROM pg_sequence WHERE seqrelid IN (SELECT oid FROM rels)
    UNION ALL
    SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), ''
    FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
    UNION ALL
    -- (the order of registration means nothing: an upgrade registers new tables last)
    SELECT 'dumped', c.oid::regclass::text, COALESCE(ext.extcondition[c.i], '')
    FROM ext, unnest(ext.extconfig) WITH ORDINALITY AS c(oid, i)
    UNION ALL
    SELECT 'initial privileges', pg_describe_object(i.classoid, i.objoid, i.objsubid), i.initprivs::text
    FROM pg_init_privs i JOIN pg_depend d ON d.classid = i.classoid AND d.objid = i.objoid, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
    UNION ALL
    SELECT 'role', r.rolname::text,
           format('login=%s member_of=%s', r.rolcanlogin,
                  (SELECT string_agg(m.roleid::regrole::text, ',' ORDER BY m.roleid::regrole::text)
                   FROM pg_auth_members m WHERE m.member = r.oid))
    FROM pg_roles r WHERE r.rolname IN ('eventstore_reader', 'eventstore_writer')
) f
ORDER BY kind, name, def
