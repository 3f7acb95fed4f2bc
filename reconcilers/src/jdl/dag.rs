//! DAG and collection jobs: the `Nodes` they are made of and the `Dependencies`
//! between them. drover does not run these yet, but they must parse and pass
//! `check`, so that a user learns about a mistake before being told that.
//!
//! Both gLite forms are read: nodes as a list of records (or of JDL file names),
//! and the older record of named nodes, `Nodes = [ a = [ File = "a.jdl"; ]; ... ]`,
//! which may hold its own `Dependencies`.

use super::lexer::Pos;
use super::parser::{Kind, Node, Stmt};
use super::validate::{describe, error, lower_job, short, warning, Scope};
use super::{Diagnostic, JobType};
use std::collections::HashSet;

pub(crate) fn check(
    job_type: JobType,
    type_pos: Pos,
    nodes: Option<&Stmt>,
    dependencies: Option<&Stmt>,
    diags: &mut Vec<Diagnostic>,
) {
    let what = if job_type == JobType::Dag {
        "a DAG"
    } else {
        "a collection"
    };
    let Some(nodes) = nodes else {
        error(
            diags,
            type_pos,
            format!(
                "{what} needs `Nodes`, such as `Nodes = {{ [ File = \"a.jdl\"; ], \
                 [ Executable = \"b.sh\"; ] }};`"
            ),
        );
        return;
    };
    let mut inner_dependencies = None;
    let names = match &nodes.value.kind {
        Kind::List(items) => {
            let mut names = Some(Vec::new());
            for item in items {
                match node(item, diags) {
                    Some(name) => {
                        if let Some(names) = names.as_mut() {
                            names.push(name);
                        }
                    }
                    None => names = None,
                }
            }
            names
        }
        Kind::Record(rec) => {
            let mut names = Vec::new();
            for stmt in &rec.stmts {
                if stmt.name.eq_ignore_ascii_case("Dependencies") {
                    inner_dependencies = Some(stmt);
                    continue;
                }
                node(&stmt.value, diags);
                names.push(stmt.name.clone());
            }
            Some(names)
        }
        other => {
            error(
                diags,
                nodes.value.pos,
                format!(
                    "`Nodes` must be a list of nodes, such as `Nodes = {{ [ File = \
                     \"a.jdl\"; ] }};`, not {}",
                    describe(other)
                ),
            );
            return;
        }
    };
    // Names are compared as ClassAd compares attribute names: the record form's
    // node names are attribute names, and `fmt` respells the known ones.
    let names: Option<HashSet<String>> =
        names.map(|names| names.iter().map(|n| n.to_ascii_lowercase()).collect());
    for deps in [dependencies, inner_dependencies].into_iter().flatten() {
        if job_type == JobType::Collection {
            warning(
                diags,
                deps.name_pos,
                "`Dependencies` are ignored in a collection; use `Type = \"DAG\"` for \
                 nodes that wait for each other",
            );
        } else {
            check_dependencies(deps, names.as_ref(), diags);
        }
    }
}

/// Checks one node and returns its name when it has one.
fn node(item: &Node, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match &item.kind {
        Kind::Str(file) if !file.trim().is_empty() => None,
        Kind::Record(rec) => {
            lower_job(rec, Scope::Node, diags);
            rec.stmts.iter().find_map(|s| match &s.value.kind {
                Kind::Str(name) if s.name.eq_ignore_ascii_case("NodeName") => Some(name.clone()),
                _ => None,
            })
        }
        other => {
            error(
                diags,
                item.pos,
                format!(
                    "a node must be a record `[ ... ]` or the name of a JDL file, not {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

/// `Dependencies = { {a, b}, {{a, b}, c} }`: pairs of parent and child, each a node
/// name or a list of them. Names are checked when every node has one.
fn check_dependencies(deps: &Stmt, names: Option<&HashSet<String>>, diags: &mut Vec<Diagnostic>) {
    let Kind::List(pairs) = &deps.value.kind else {
        error(
            diags,
            deps.value.pos,
            "`Dependencies` must be a list of pairs, such as `Dependencies = { {\"a\", \"b\"} };`",
        );
        return;
    };
    for pair in pairs {
        match &pair.kind {
            Kind::List(sides) if sides.len() == 2 => {
                for side in sides {
                    match &side.kind {
                        Kind::List(group) => group.iter().for_each(|n| node_ref(n, names, diags)),
                        _ => node_ref(side, names, diags),
                    }
                }
            }
            _ => error(
                diags,
                pair.pos,
                "each entry of `Dependencies` must be a pair `{parent, child}`",
            ),
        }
    }
}

fn node_ref(item: &Node, names: Option<&HashSet<String>>, diags: &mut Vec<Diagnostic>) {
    let name = match &item.kind {
        Kind::Str(s) | Kind::Expr(s) => s,
        other => {
            error(
                diags,
                item.pos,
                format!("`Dependencies` must name nodes, not {}", describe(other)),
            );
            return;
        }
    };
    if let Some(names) = names {
        if !names.contains(&name.to_ascii_lowercase()) {
            error(
                diags,
                item.pos,
                format!(
                    "`Dependencies` names the node `{}`, which is not in `Nodes`",
                    short(name)
                ),
            );
        }
    }
}
