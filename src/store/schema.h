/* schema.h - migrations embedded from src/store/schema/<backend>/NNNN_*.sql
 * by scripts/embed_sql.sh. Each table ends with {0, NULL, NULL}. Numbers are
 * never reused or renumbered; a released migration is never edited. */
#ifndef VX_SCHEMA_H
#define VX_SCHEMA_H

typedef struct vx_migration {
    int version;
    const char *name;
    const char *sql;
} vx_migration;

extern const vx_migration vx_migrations_sqlite[];
extern const vx_migration vx_migrations_postgres[];

#endif
