//! Engine error type. Messages follow MongoDB's own error texts where
//! reasonable so the server can pass them through to clients unchanged.

/// Every failure the engine can report. Bad input never panics; it ends up here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// Malformed or semantically invalid argument (MongoDB `BadValue`, code 2).
    #[error("{0}")]
    BadValue(String),
    /// A spec could not be parsed (MongoDB `FailedToParse`, code 9).
    #[error("{0}")]
    FailedToParse(String),
    /// Unknown field-level query operator, e.g. `{a: {$foo: 1}}`.
    #[error("unknown operator: {0}")]
    UnknownOperator(String),
    /// Unknown top-level query operator, e.g. `{$foo: 1}`.
    #[error("unknown top level operator: {0}. If you have a field name that starts with a '$' symbol, consider using $getField or $setField.")]
    UnknownTopLevelOperator(String),
    /// Server-side JavaScript (`$where`, `$function`, `$accumulator`) is refused.
    #[error("{0} is not allowed")]
    JavaScriptNotAllowed(String),
    /// Operand of the wrong BSON type (MongoDB `TypeMismatch`, code 14).
    #[error("{0}")]
    TypeMismatch(String),
    /// Two update operators touch overlapping paths (code 40).
    #[error("{0}")]
    ConflictingUpdateOperators(String),
    /// An update tried to change `_id` (code 66).
    #[error("{0}")]
    ImmutableField(String),
    /// An update path cannot be created/traversed (code 28).
    #[error("{0}")]
    PathNotViable(String),
    /// Unknown update modifier such as `$foo` (code 9 in MongoDB).
    #[error("Unknown modifier: {0}. Expected a valid update modifier or pipeline-style update specified as an array")]
    UnknownModifier(String),
    /// The positional `$` operator found no matched array element.
    #[error("The positional operator did not find the match needed from the query.")]
    PositionalNoMatch,
    /// Unknown aggregation stage (MongoDB code 40324).
    #[error("Unrecognized pipeline stage name: '{0}'")]
    UnrecognizedStage(String),
    /// A stage the engine recognises but will not run by itself (`$out`,
    /// `$merge`, `$unionWith`, `$graphLookup`): the server decides.
    #[error("{0} is not allowed in this context")]
    StageNotAllowed(String),
    /// Unknown aggregation expression operator (MongoDB code 168).
    #[error("Unrecognized expression '{0}'")]
    UnrecognizedExpression(String),
    /// Unknown `$group` accumulator (MongoDB code 15952).
    #[error("unknown group operator '{0}'")]
    UnknownAccumulator(String),
    /// Runtime failure while evaluating an expression or stage.
    #[error("{0}")]
    Expression(String),
    /// Invalid projection spec or projection-time failure.
    #[error("{0}")]
    Projection(String),
    /// Error raised by the caller's [`super::ForeignSource`].
    #[error("{0}")]
    Foreign(String),
    /// A valid MongoDB feature this engine does not implement.
    #[error("{0} is not supported by the embedded query engine")]
    Unsupported(String),
    /// Client data ran into one of the engine's bounds (path length, depth,
    /// memory budget, regex size): see [`super::limits`].
    #[error("{0}")]
    Limit(#[from] super::limits::LimitError),
}

impl EngineError {
    /// MongoDB error code closest to this error, for wire-protocol replies.
    pub fn code(&self) -> i32 {
        match self {
            EngineError::BadValue(_)
            | EngineError::UnknownOperator(_)
            | EngineError::UnknownTopLevelOperator(_)
            | EngineError::JavaScriptNotAllowed(_)
            | EngineError::PositionalNoMatch => 2,
            EngineError::FailedToParse(_) | EngineError::UnknownModifier(_) => 9,
            EngineError::TypeMismatch(_) => 14,
            EngineError::PathNotViable(_) => 28,
            EngineError::ConflictingUpdateOperators(_) => 40,
            EngineError::ImmutableField(_) => 66,
            EngineError::UnrecognizedStage(_) => 40324,
            EngineError::StageNotAllowed(_) => 13,
            EngineError::UnrecognizedExpression(_) => 168,
            EngineError::UnknownAccumulator(_) => 15952,
            EngineError::Expression(_) | EngineError::Projection(_) => 2,
            EngineError::Foreign(_) => 1,
            EngineError::Unsupported(_) => 115,
            EngineError::Limit(super::limits::LimitError::Memory { .. })
            | EngineError::Limit(super::limits::LimitError::SortMemory { .. }) => 292,
            EngineError::Limit(_) => 2,
        }
    }

    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        EngineError::BadValue(msg.into())
    }

    pub(crate) fn expr(msg: impl Into<String>) -> Self {
        EngineError::Expression(msg.into())
    }
}
