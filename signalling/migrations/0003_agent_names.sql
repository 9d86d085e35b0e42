-- What customers see of an agent (never the e-mail address); NULL: the
-- agent has none yet and the e-mail is shown.
ALTER TABLE agents ADD COLUMN name TEXT;
