//! The attribute names drover knows: the ones it acts on, the gLite and DIRAC ones it
//! keeps without acting on them, how each one's value is read, and "did you mean"
//! for the near misses.

/// How the value of an attribute is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Strings and lists of strings: unquoted text is a bare word (`Executable = run.sh`,
    /// `Arguments = -n 5`), because the seed and sloppy real files write them so.
    Bare,
    /// Everything else: literals, or an expression kept as source text
    /// (`Rank = -other.GlueCEStateEstimatedResponseTime`).
    Expr,
}

/// The attributes that are fields of `JobDescription`, in canonical order and
/// spelling. All are read in `Mode::Bare` except the counts.
pub(crate) const TYPE: &str = "Type";
pub(crate) const JOB_TYPE: &str = "JobType";
pub(crate) const JOB_NAME: &str = "JobName";
pub(crate) const EXECUTABLE: &str = "Executable";
pub(crate) const ARGUMENTS: &str = "Arguments";
pub(crate) const STD_INPUT: &str = "StdInput";
pub(crate) const STD_OUTPUT: &str = "StdOutput";
pub(crate) const STD_ERROR: &str = "StdError";
pub(crate) const INPUT_SANDBOX: &str = "InputSandbox";
pub(crate) const OUTPUT_SANDBOX: &str = "OutputSandbox";
pub(crate) const PROLOGUE: &str = "Prologue";
pub(crate) const PROLOGUE_ARGUMENTS: &str = "PrologueArguments";
pub(crate) const EPILOGUE: &str = "Epilogue";
pub(crate) const EPILOGUE_ARGUMENTS: &str = "EpilogueArguments";
pub(crate) const ENVIRONMENT: &str = "Environment";
pub(crate) const RETRY_COUNT: &str = "RetryCount";
pub(crate) const SHALLOW_RETRY_COUNT: &str = "ShallowRetryCount";
pub(crate) const MAX_WALL_TIME: &str = "MaxWallTime";

/// DAG and collection nodes: attributes a node record may have besides a job's.
pub(crate) const NODES: &str = "Nodes";
pub(crate) const NODE_NAME: &str = "NodeName";
pub(crate) const FILE: &str = "File";
pub(crate) const DESCRIPTION: &str = "Description";
pub(crate) const DEPENDENCIES: &str = "Dependencies";
pub(crate) const PARAMETERS: &str = "Parameters";
pub(crate) const PARAMETER_START: &str = "ParameterStart";
pub(crate) const PARAMETER_STEP: &str = "ParameterStep";
pub(crate) const REQUIREMENTS: &str = "Requirements";
pub(crate) const RANK: &str = "Rank";
pub(crate) const DEFAULT_NODE_RETRY_COUNT: &str = "DefaultNodeRetryCount";
pub(crate) const DEFAULT_NODE_SHALLOW_RETRY_COUNT: &str = "DefaultNodeShallowRetryCount";

/// The fields of `JobDescription`, in the canonical writer's order.
pub(crate) const FIELDS: &[&str] = &[
    TYPE,
    JOB_TYPE,
    JOB_NAME,
    EXECUTABLE,
    ARGUMENTS,
    STD_INPUT,
    STD_OUTPUT,
    STD_ERROR,
    INPUT_SANDBOX,
    OUTPUT_SANDBOX,
    PROLOGUE,
    PROLOGUE_ARGUMENTS,
    EPILOGUE,
    EPILOGUE_ARGUMENTS,
    ENVIRONMENT,
    RETRY_COUNT,
    SHALLOW_RETRY_COUNT,
    MAX_WALL_TIME,
];

/// Attributes of the gLite WMS and DIRAC JDLs that drover keeps in `other` without
/// acting on them. Being listed here means: no "unknown attribute" warning, and the
/// canonical spelling in `drover jdl fmt`.
pub(crate) const KEPT: &[&str] = &[
    NODES,
    NODE_NAME,
    FILE,
    DESCRIPTION,
    DEPENDENCIES,
    PARAMETERS,
    PARAMETER_START,
    PARAMETER_STEP,
    REQUIREMENTS,
    RANK,
    DEFAULT_NODE_RETRY_COUNT,
    DEFAULT_NODE_SHALLOW_RETRY_COUNT,
    "VirtualOrganisation",
    "MyProxyServer",
    "HLRLocation",
    "FuzzyRank",
    "DefaultRank",
    "InputSandboxBaseURI",
    "OutputSandboxDestURI",
    "OutputSandboxBaseDestURI",
    "PerusalFileEnable",
    "PerusalTimeInterval",
    "PerusalFilesDestURI",
    "CpuNumber",
    "NodeNumber",
    "SMPGranularity",
    "WholeNodes",
    "HostNumber",
    "ListenerPort",
    "ListenerHost",
    "ListenerPipeName",
    "NodesCollocation",
    "ExpiryTime",
    "AllowZippedISB",
    "ZippedISB",
    "ShortDeadlineJob",
    "EnableWMSFeedback",
    "CERequirements",
    "CEForwardParameters",
    "SubmitTo",
    "UserTags",
    "InputData",
    "OutputData",
    "OutputFile",
    "StorageElement",
    "LogicalFileName",
    "DataRequirements",
    "DataCatalog",
    "DataCatalogType",
    "DataAccessProtocol",
    "OutputSE",
    "OutputPath",
    "JobGroup",
    "Site",
    "BannedSites",
    "CPUTime",
    "MaxCPUTime",
    "Priority",
    "LogLevel",
    "Platform",
    "Tags",
    "NumberOfProcessors",
    "Origin",
    "Owner",
    "OwnerGroup",
];

/// Names whose values are strings or lists of strings, so bare words are allowed.
const BARE: &[&str] = &[
    TYPE,
    JOB_TYPE,
    JOB_NAME,
    EXECUTABLE,
    ARGUMENTS,
    STD_INPUT,
    STD_OUTPUT,
    STD_ERROR,
    INPUT_SANDBOX,
    OUTPUT_SANDBOX,
    PROLOGUE,
    PROLOGUE_ARGUMENTS,
    EPILOGUE,
    EPILOGUE_ARGUMENTS,
    ENVIRONMENT,
    NODE_NAME,
    FILE,
];

/// The canonical spelling of a known name, matched case-insensitively.
pub(crate) fn canonical(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .chain(KEPT)
        .find(|known| known.eq_ignore_ascii_case(name))
        .copied()
}

pub(crate) fn mode_of(name: &str) -> Mode {
    if BARE.iter().any(|bare| bare.eq_ignore_ascii_case(name)) {
        Mode::Bare
    } else {
        Mode::Expr
    }
}

/// The known name closest to a misspelt one, if it is close enough to be a typo:
/// one edit for short names, two for longer ones (transposed letters count once).
pub(crate) fn did_you_mean(name: &str) -> Option<&'static str> {
    let lower: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let allowed = if lower.len() >= 6 { 2 } else { 1 };
    let mut best: Option<(usize, &'static str)> = None;
    for known in FIELDS.iter().chain(KEPT) {
        let other: Vec<char> = known.to_ascii_lowercase().chars().collect();
        // Cheap bound first: names whose lengths differ by more cannot be close,
        // and this keeps a pathological 1 MiB name from costing a quadratic table.
        if lower.len().abs_diff(other.len()) > allowed {
            continue;
        }
        let d = edit_distance(&lower, &other);
        if d <= allowed && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, known));
        }
    }
    best.map(|(_, known)| known)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut prev2 = vec![0usize; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0usize; width];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_are_matched_whatever_their_case() {
        assert_eq!(canonical("stdoutput"), Some(STD_OUTPUT));
        assert_eq!(canonical("REQUIREMENTS"), Some(REQUIREMENTS));
        assert_eq!(canonical("Frobnicate"), None);
    }

    #[test]
    fn typos_of_known_names_find_the_name_meant() {
        assert_eq!(did_you_mean("StdOuput"), Some(STD_OUTPUT));
        assert_eq!(did_you_mean("Executible"), Some(EXECUTABLE));
        assert_eq!(did_you_mean("Argumnets"), Some(ARGUMENTS));
        assert_eq!(did_you_mean("inputsandbx"), Some(INPUT_SANDBOX));
        assert_eq!(did_you_mean("Colour"), None);
    }

    #[test]
    fn transpositions_count_as_one_edit() {
        let a: Vec<char> = "ab".chars().collect();
        let b: Vec<char> = "ba".chars().collect();
        assert_eq!(edit_distance(&a, &b), 1);
    }
}
