-- The embedded store's index mirror (local runs and tests only; compose runs MongoDB).
--
-- FerretDB v1.24 on PostgreSQL turns each MongoDB index into a btree on the field's expression,
-- `(_jsonb -> 'field')`, but filters every query (also the one it runs before each update and
-- delete) with `_jsonb -> 'field' @> value` (or `_jsonb #> '{a,b}' @> value` for a dotted path),
-- which a btree cannot serve: every lookup would read the whole table. This trigger gives each
-- key of every btree FerretDB creates a GIN index on the very expression its queries use, so an
-- equality lookup stays an index lookup however large the collection grows. FerretDB does not list
-- these indexes and drops them with their table.
--
-- The btree itself is then dropped, unless it is unique (it enforces the uniqueness): nothing reads
-- it, and every insert and update would still maintain it. FerretDB keeps the index in its own
-- catalogue, so listing it and declaring it again at a restart work as before; dropping it by name
-- (which no service does) would fail.
CREATE OR REPLACE FUNCTION carecrm_mirror_gin() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    cmd record;
    idx record;
    col int;
    keys text[];
    target text;
BEGIN
    FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands()
               WHERE command_tag = 'CREATE INDEX' AND object_type = 'index' LOOP
        SELECT i.indnkeyatts AS n, i.indisunique AS uniq, ic.relname AS name, am.amname AS am,
               t.relname AS tbl, ns.nspname AS nsp
          INTO idx
          FROM pg_index i
          JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_am am ON am.oid = ic.relam
          JOIN pg_class t ON t.oid = i.indrelid
          JOIN pg_namespace ns ON ns.oid = t.relnamespace
         WHERE i.indexrelid = cmd.objid;
        -- Our own GIN indexes fire this trigger too; FerretDB's catalogue table is not a collection.
        CONTINUE WHEN idx.am <> 'btree' OR idx.tbl LIKE '\_ferretdb\_%';
        FOR col IN 1..idx.n LOOP
            -- `((_jsonb -> 'a'::text) -> 'b'::text)`: the quoted literals are the path.
            SELECT array_agg(replace(m[1], '''''', '''') ORDER BY ord) INTO keys
              FROM regexp_matches(pg_get_indexdef(cmd.objid, col, false), '''((?:[^'']|'''''')*)''', 'g')
                   WITH ORDINALITY AS r(m, ord);
            CONTINUE WHEN keys IS NULL;
            IF array_length(keys, 1) = 1 THEN
                target := format('(_jsonb -> %L::text)', keys[1]);
            ELSE
                target := format('(_jsonb #> %L::text[])', keys);
            END IF;
            -- No pending list: lookups right after a burst of inserts would read it whole.
            EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin (%s) WITH (fastupdate = off)',
                           left(idx.tbl, 40) || '_' || left(md5(target), 12) || '_gin', idx.nsp, idx.tbl, target);
        END LOOP;
        IF NOT idx.uniq THEN
            EXECUTE format('DROP INDEX %I.%I', idx.nsp, idx.name);
        END IF;
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS carecrm_mirror_gin;
CREATE EVENT TRIGGER carecrm_mirror_gin ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION carecrm_mirror_gin();

-- A store created before the btrees were dropped: drop them now (no query can use them).
DO $$
DECLARE
    idx record;
BEGIN
    FOR idx IN SELECT ic.relname AS name, ns.nspname AS nsp
                 FROM pg_index i
                 JOIN pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_am am ON am.oid = ic.relam
                 JOIN pg_class t ON t.oid = i.indrelid
                 JOIN pg_namespace ns ON ns.oid = t.relnamespace
                WHERE am.amname = 'btree' AND NOT i.indisunique AND i.indexprs IS NOT NULL
                  AND t.relname NOT LIKE '\_ferretdb\_%' AND ns.nspname NOT IN ('pg_catalog', 'information_schema') LOOP
        EXECUTE format('DROP INDEX %I.%I', idx.nsp, idx.name);
    END LOOP;
END
$$;
