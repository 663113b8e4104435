/* The SQL migrations embedded at build time from sql/NNN_name.sql.
 * A constant table: nothing to free. */
#ifndef HGF_MIGRATIONS_H
#define HGF_MIGRATIONS_H

typedef struct hgf_migration {
    int version;
    const char *name;
    const char *sql;
} hgf_migration;

extern const hgf_migration hgf_migrations[];
extern const int hgf_migrations_count;

#endif
