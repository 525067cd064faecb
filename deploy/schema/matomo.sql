-- Matomo 5.1.2 / 5.2 database schema: every table a fresh Matomo install creates (32 tables).
--
-- Written for this project from Matomo's own DDL (core/Db/Schema/Mysql.php, the dimension columns
-- that core plugins add to the log tables, and the tables plugins create on install), checked
-- against what Matomo 5.1.2's installer created on MariaDB 10.11. Where each table and column
-- group comes from: docs/schema.md. A test (config/tests/schema.rs) compares a database built
-- from this file with information_schema, so drift is caught.
--
-- `{{prefix}}` stands for `[database] tables_prefix` (default `matomo_`); substitute it before
-- running (tier_config::schema::matomo_schema_sql does). Every statement is CREATE TABLE IF NOT
-- EXISTS, so applying the file twice changes nothing. Column order follows the installer's
-- (plugin dimension columns are appended in plugin install order), so information_schema's
-- ORDINAL_POSITION matches a real install as well.

-- ---------------------------------------------------------------------------------------------
-- Raw tracking data (written by the tracker / our worker)
-- ---------------------------------------------------------------------------------------------

-- One row per visit. Core columns first, then the dimension columns of the core plugins.
CREATE TABLE IF NOT EXISTS `{{prefix}}log_visit` (
  `idvisit` BIGINT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  `idsite` INT(10) UNSIGNED NOT NULL,
  `idvisitor` BINARY(8) NOT NULL,
  `visit_last_action_time` DATETIME NOT NULL,
  `config_id` BINARY(8) NOT NULL,
  `location_ip` VARBINARY(16) NOT NULL,
  `profilable` TINYINT(1) NULL DEFAULT NULL,
  `user_id` VARCHAR(200) NULL DEFAULT NULL,
  `visit_first_action_time` DATETIME NOT NULL,
  `visit_goal_buyer` TINYINT(1) NULL DEFAULT NULL,
  `visit_goal_converted` TINYINT(1) NULL DEFAULT NULL,
  `visitor_returning` TINYINT(1) NULL DEFAULT NULL,
  `visitor_seconds_since_first` INT(11) UNSIGNED NULL DEFAULT NULL,
  `visitor_seconds_since_order` INT(11) UNSIGNED NULL DEFAULT NULL,
  `visitor_count_visits` INT(11) UNSIGNED NOT NULL DEFAULT 0,
  `visit_entry_idaction_name` INT(10) UNSIGNED NULL DEFAULT NULL,
  `visit_entry_idaction_url` INT(11) UNSIGNED NULL DEFAULT NULL,
  `visit_exit_idaction_name` INT(10) UNSIGNED NULL DEFAULT NULL,
  `visit_exit_idaction_url` INT(10) UNSIGNED NULL DEFAULT 0,
  `visit_total_actions` INT(11) UNSIGNED NULL DEFAULT NULL,
  `visit_total_interactions` MEDIUMINT(8) UNSIGNED NULL DEFAULT 0,
  `visit_total_searches` SMALLINT(5) UNSIGNED NULL DEFAULT NULL,
  `referer_keyword` VARCHAR(255) NULL DEFAULT NULL,
  `referer_name` VARCHAR(255) NULL DEFAULT NULL,
  `referer_type` TINYINT(1) UNSIGNED NULL DEFAULT NULL,
  `referer_url` VARCHAR(1500) NULL DEFAULT NULL,
  `location_browser_lang` VARCHAR(20) NULL DEFAULT NULL,
  `config_browser_engine` VARCHAR(10) NULL DEFAULT NULL,
  `config_browser_name` VARCHAR(40) NULL DEFAULT NULL,
  `config_browser_version` VARCHAR(20) NULL DEFAULT NULL,
  `config_client_type` TINYINT(1) NULL DEFAULT NULL,
  `config_device_brand` VARCHAR(100) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci NULL DEFAULT NULL,
  `config_device_model` VARCHAR(100) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci NULL DEFAULT NULL,
  `config_device_type` TINYINT(100) NULL DEFAULT NULL,
  `config_os` CHAR(3) NULL DEFAULT NULL,
  `config_os_version` VARCHAR(100) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci NULL DEFAULT NULL,
  `visit_total_events` INT(11) UNSIGNED NULL DEFAULT NULL,
  `visitor_localtime` TIME NULL DEFAULT NULL,
  `visitor_seconds_since_last` INT(11) UNSIGNED NULL DEFAULT NULL,
  `config_resolution` VARCHAR(18) NULL DEFAULT NULL,
  `config_cookie` TINYINT(1) NULL DEFAULT NULL,
  `config_flash` TINYINT(1) NULL DEFAULT NULL,
  `config_java` TINYINT(1) NULL DEFAULT NULL,
  `config_pdf` TINYINT(1) NULL DEFAULT NULL,
  `config_quicktime` TINYINT(1) NULL DEFAULT NULL,
  `config_realplayer` TINYINT(1) NULL DEFAULT NULL,
  `config_silverlight` TINYINT(1) NULL DEFAULT NULL,
  `config_windowsmedia` TINYINT(1) NULL DEFAULT NULL,
  `visit_total_time` INT(11) UNSIGNED NOT NULL,
  `location_city` VARCHAR(255) NULL DEFAULT NULL,
  `location_country` CHAR(3) NULL DEFAULT NULL,
  `location_latitude` DECIMAL(9,6) NULL DEFAULT NULL,
  `location_longitude` DECIMAL(9,6) NULL DEFAULT NULL,
  `location_region` CHAR(3) NULL DEFAULT NULL,
  `last_idlink_va` BIGINT(20) UNSIGNED NULL DEFAULT NULL,
  `custom_dimension_1` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_2` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_3` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_4` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_5` VARCHAR(255) NULL DEFAULT NULL,
  PRIMARY KEY (`idvisit`),
  INDEX `index_idsite_config_datetime` (`idsite`, `config_id`, `visit_last_action_time`),
  INDEX `index_idsite_datetime` (`idsite`, `visit_last_action_time`),
  INDEX `index_idsite_idvisitor_time` (`idsite`, `idvisitor`, `visit_last_action_time` DESC)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- One row per action (page view, download, outlink, search, event, content interaction...).
CREATE TABLE IF NOT EXISTS `{{prefix}}log_link_visit_action` (
  `idlink_va` BIGINT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  `idsite` INT(10) UNSIGNED NOT NULL,
  `idvisitor` BINARY(8) NOT NULL,
  `idvisit` BIGINT(10) UNSIGNED NOT NULL,
  `idaction_url_ref` INT(10) UNSIGNED NULL DEFAULT 0,
  `idaction_name_ref` INT(10) UNSIGNED NULL DEFAULT NULL,
  `custom_float` DOUBLE NULL DEFAULT NULL,
  `pageview_position` MEDIUMINT(8) UNSIGNED NULL DEFAULT NULL,
  `server_time` DATETIME NOT NULL,
  `idpageview` CHAR(6) NULL DEFAULT NULL,
  `idaction_name` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_url` INT(10) UNSIGNED NULL DEFAULT NULL,
  `search_cat` VARCHAR(200) NULL DEFAULT NULL,
  `search_count` INT(10) UNSIGNED NULL DEFAULT NULL,
  `time_spent_ref_action` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_product_cat` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_product_cat2` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_product_cat3` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_product_cat4` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_product_cat5` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_product_name` INT(10) UNSIGNED NULL DEFAULT NULL,
  `product_price` DOUBLE NULL DEFAULT NULL,
  `idaction_product_sku` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_event_action` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_event_category` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_content_interaction` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_content_name` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_content_piece` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idaction_content_target` INT(10) UNSIGNED NULL DEFAULT NULL,
  `time_dom_completion` MEDIUMINT(10) UNSIGNED NULL DEFAULT NULL,
  `time_dom_processing` MEDIUMINT(10) UNSIGNED NULL DEFAULT NULL,
  `time_network` MEDIUMINT(10) UNSIGNED NULL DEFAULT NULL,
  `time_on_load` MEDIUMINT(10) UNSIGNED NULL DEFAULT NULL,
  `time_server` MEDIUMINT(10) UNSIGNED NULL DEFAULT NULL,
  `time_transfer` MEDIUMINT(10) UNSIGNED NULL DEFAULT NULL,
  `time_spent` INT(10) UNSIGNED NULL DEFAULT NULL,
  `custom_dimension_1` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_2` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_3` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_4` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_5` VARCHAR(255) NULL DEFAULT NULL,
  PRIMARY KEY (`idlink_va`),
  INDEX `index_idvisit` (`idvisit`),
  INDEX `index_idsite_servertime` (`idsite`, `server_time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- Names of URLs, titles, event parts, products... shared by all visits. No unique key on purpose:
-- Matomo looks rows up by (type, hash = CRC32(name), name) and resolves duplicate inserts itself.
CREATE TABLE IF NOT EXISTS `{{prefix}}log_action` (
  `idaction` INT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  `name` VARCHAR(4096) NULL DEFAULT NULL,
  `hash` INT(10) UNSIGNED NOT NULL,
  `type` TINYINT(3) UNSIGNED NULL DEFAULT NULL,
  `url_prefix` TINYINT(2) NULL DEFAULT NULL,
  PRIMARY KEY (`idaction`),
  INDEX `index_type_hash` (`type`, `hash`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- Goal conversions and ecommerce orders / cart updates (idgoal 0 order, -1 cart).
CREATE TABLE IF NOT EXISTS `{{prefix}}log_conversion` (
  `idvisit` BIGINT(10) UNSIGNED NOT NULL,
  `idsite` INT(10) UNSIGNED NOT NULL,
  `idvisitor` BINARY(8) NOT NULL,
  `server_time` DATETIME NOT NULL,
  `idaction_url` INT(10) UNSIGNED NULL DEFAULT NULL,
  `idlink_va` BIGINT(10) UNSIGNED NULL DEFAULT NULL,
  `idgoal` INT(10) NOT NULL,
  `buster` INT(10) UNSIGNED NOT NULL,
  `idorder` VARCHAR(100) NULL DEFAULT NULL,
  `items` SMALLINT(5) UNSIGNED NULL DEFAULT NULL,
  `url` VARCHAR(4096) NOT NULL,
  `revenue` FLOAT NULL DEFAULT NULL,
  `revenue_shipping` DOUBLE NULL DEFAULT NULL,
  `revenue_subtotal` DOUBLE NULL DEFAULT NULL,
  `revenue_tax` DOUBLE NULL DEFAULT NULL,
  `revenue_discount` DOUBLE NULL DEFAULT NULL,
  `pageviews_before` SMALLINT(5) UNSIGNED NULL DEFAULT NULL,
  `visitor_returning` TINYINT(1) NULL DEFAULT NULL,
  `visitor_seconds_since_first` INT(11) UNSIGNED NULL DEFAULT NULL,
  `visitor_seconds_since_order` INT(11) UNSIGNED NULL DEFAULT NULL,
  `visitor_count_visits` INT(11) UNSIGNED NOT NULL DEFAULT 0,
  `referer_keyword` VARCHAR(255) NULL DEFAULT NULL,
  `referer_name` VARCHAR(255) NULL DEFAULT NULL,
  `referer_type` TINYINT(1) UNSIGNED NULL DEFAULT NULL,
  `config_browser_name` VARCHAR(40) NULL DEFAULT NULL,
  `config_client_type` TINYINT(1) NULL DEFAULT NULL,
  `config_device_brand` VARCHAR(100) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci NULL DEFAULT NULL,
  `config_device_model` VARCHAR(100) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci NULL DEFAULT NULL,
  `config_device_type` TINYINT(100) NULL DEFAULT NULL,
  `location_city` VARCHAR(255) NULL DEFAULT NULL,
  `location_country` CHAR(3) NULL DEFAULT NULL,
  `location_latitude` DECIMAL(9,6) NULL DEFAULT NULL,
  `location_longitude` DECIMAL(9,6) NULL DEFAULT NULL,
  `location_region` CHAR(3) NULL DEFAULT NULL,
  `custom_dimension_1` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_2` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_3` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_4` VARCHAR(255) NULL DEFAULT NULL,
  `custom_dimension_5` VARCHAR(255) NULL DEFAULT NULL,
  PRIMARY KEY (`idvisit`, `idgoal`, `buster`),
  UNIQUE KEY `unique_idsite_idorder` (`idsite`, `idorder`),
  INDEX `index_idsite_datetime` (`idsite`, `server_time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- Items of ecommerce orders and abandoned carts.
CREATE TABLE IF NOT EXISTS `{{prefix}}log_conversion_item` (
  `idsite` INT(10) UNSIGNED NOT NULL,
  `idvisitor` BINARY(8) NOT NULL,
  `server_time` DATETIME NOT NULL,
  `idvisit` BIGINT(10) UNSIGNED NOT NULL,
  `idorder` VARCHAR(100) NOT NULL,
  `idaction_sku` INT(10) UNSIGNED NOT NULL,
  `idaction_name` INT(10) UNSIGNED NOT NULL,
  `idaction_category` INT(10) UNSIGNED NOT NULL,
  `idaction_category2` INT(10) UNSIGNED NOT NULL,
  `idaction_category3` INT(10) UNSIGNED NOT NULL,
  `idaction_category4` INT(10) UNSIGNED NOT NULL,
  `idaction_category5` INT(10) UNSIGNED NOT NULL,
  `price` DOUBLE NOT NULL,
  `quantity` INT(10) UNSIGNED NOT NULL,
  `deleted` TINYINT(1) UNSIGNED NOT NULL,
  PRIMARY KEY (`idvisit`, `idorder`, `idaction_sku`),
  INDEX `index_idsite_servertime` (`idsite`, `server_time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}log_profiling` (
  `query` TEXT NOT NULL,
  `count` INT(10) UNSIGNED NULL DEFAULT NULL,
  `sum_time_ms` FLOAT NULL DEFAULT NULL,
  `idprofiling` BIGINT(20) UNSIGNED NOT NULL AUTO_INCREMENT,
  PRIMARY KEY (`idprofiling`),
  UNIQUE KEY `query` (`query`(100))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- ---------------------------------------------------------------------------------------------
-- Configuration the tracker reads (sites, goals, users, tokens, access, options, dimensions)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS `{{prefix}}site` (
  `idsite` INT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  `name` VARCHAR(90) NOT NULL,
  `main_url` VARCHAR(255) NOT NULL,
  `ts_created` TIMESTAMP NULL DEFAULT NULL,
  `ecommerce` TINYINT(4) NULL DEFAULT 0,
  `sitesearch` TINYINT(4) NULL DEFAULT 1,
  `sitesearch_keyword_parameters` TEXT NOT NULL,
  `sitesearch_category_parameters` TEXT NOT NULL,
  `timezone` VARCHAR(50) NOT NULL,
  `currency` CHAR(3) NOT NULL,
  `exclude_unknown_urls` TINYINT(1) NULL DEFAULT 0,
  `excluded_ips` TEXT NOT NULL,
  `excluded_parameters` TEXT NOT NULL,
  `excluded_user_agents` TEXT NOT NULL,
  `excluded_referrers` TEXT NOT NULL,
  `group` VARCHAR(250) NOT NULL,
  `type` VARCHAR(255) NOT NULL,
  `keep_url_fragment` TINYINT(4) NOT NULL DEFAULT 0,
  `creator_login` VARCHAR(100) NULL DEFAULT NULL,
  PRIMARY KEY (`idsite`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- Alias URLs of a site (the main URL lives in site.main_url).
CREATE TABLE IF NOT EXISTS `{{prefix}}site_url` (
  `idsite` INT(10) UNSIGNED NOT NULL,
  `url` VARCHAR(190) NOT NULL,
  PRIMARY KEY (`idsite`, `url`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}site_setting` (
  `idsite` INT(10) UNSIGNED NOT NULL,
  `plugin_name` VARCHAR(60) NOT NULL,
  `setting_name` VARCHAR(255) NOT NULL,
  `setting_value` LONGTEXT NOT NULL,
  `json_encoded` TINYINT(3) UNSIGNED NOT NULL DEFAULT 0,
  `idsite_setting` BIGINT(20) UNSIGNED NOT NULL AUTO_INCREMENT,
  PRIMARY KEY (`idsite_setting`),
  INDEX `idsite` (`idsite`, `plugin_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}goal` (
  `idsite` INT(11) NOT NULL,
  `idgoal` INT(11) NOT NULL,
  `name` VARCHAR(50) NOT NULL,
  `description` VARCHAR(255) NOT NULL DEFAULT '',
  `match_attribute` VARCHAR(20) NOT NULL,
  `pattern` VARCHAR(255) NOT NULL,
  `pattern_type` VARCHAR(25) NOT NULL,
  `case_sensitive` TINYINT(4) NOT NULL,
  `allow_multiple` TINYINT(4) NOT NULL,
  `revenue` DOUBLE NOT NULL,
  `deleted` TINYINT(4) NOT NULL DEFAULT 0,
  `event_value_as_revenue` TINYINT(4) NOT NULL DEFAULT 0,
  PRIMARY KEY (`idsite`, `idgoal`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- Key/value store: global settings (SitesManager_*, PrivacyManager.*), fingerprint salts,
-- report_to_invalidate markers, ...
CREATE TABLE IF NOT EXISTS `{{prefix}}option` (
  `option_name` VARCHAR(191) NOT NULL,
  `option_value` LONGTEXT NOT NULL,
  `autoload` TINYINT(4) NOT NULL DEFAULT 1,
  PRIMARY KEY (`option_name`),
  INDEX `autoload` (`autoload`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}plugin_setting` (
  `plugin_name` VARCHAR(60) NOT NULL,
  `setting_name` VARCHAR(255) NOT NULL,
  `setting_value` LONGTEXT NOT NULL,
  `json_encoded` TINYINT(3) UNSIGNED NOT NULL DEFAULT 0,
  `user_login` VARCHAR(100) NOT NULL DEFAULT '',
  `idplugin_setting` BIGINT(20) UNSIGNED NOT NULL AUTO_INCREMENT,
  PRIMARY KEY (`idplugin_setting`),
  INDEX `plugin_name` (`plugin_name`, `user_login`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}user` (
  `login` VARCHAR(100) NOT NULL,
  `password` VARCHAR(255) NOT NULL,
  `email` VARCHAR(100) NOT NULL,
  `twofactor_secret` VARCHAR(40) NOT NULL DEFAULT '',
  `superuser_access` TINYINT(2) UNSIGNED NOT NULL DEFAULT 0,
  `date_registered` TIMESTAMP NULL DEFAULT NULL,
  `ts_password_modified` TIMESTAMP NULL DEFAULT NULL,
  `idchange_last_viewed` INT(10) UNSIGNED NULL DEFAULT NULL,
  `invited_by` VARCHAR(100) NULL DEFAULT NULL,
  `invite_token` VARCHAR(191) NULL DEFAULT NULL,
  `invite_link_token` VARCHAR(191) NULL DEFAULT NULL,
  `invite_expired_at` TIMESTAMP NULL DEFAULT NULL,
  `invite_accept_at` TIMESTAMP NULL DEFAULT NULL,
  `ts_changes_shown` TIMESTAMP NULL DEFAULT NULL,
  PRIMARY KEY (`login`),
  UNIQUE KEY `uniq_email` (`email`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- token_auth values, stored as hash(token . [General] salt) in `password` (hash_algo sha512).
CREATE TABLE IF NOT EXISTS `{{prefix}}user_token_auth` (
  `idusertokenauth` BIGINT(20) UNSIGNED NOT NULL AUTO_INCREMENT,
  `login` VARCHAR(100) NOT NULL,
  `description` VARCHAR(100) NOT NULL,
  `password` VARCHAR(191) NOT NULL,
  `hash_algo` VARCHAR(30) NOT NULL,
  `system_token` TINYINT(1) NOT NULL DEFAULT 0,
  `last_used` DATETIME NULL DEFAULT NULL,
  `date_created` DATETIME NOT NULL,
  `date_expired` DATETIME NULL DEFAULT NULL,
  `secure_only` TINYINT(2) UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (`idusertokenauth`),
  UNIQUE KEY `uniq_password` (`password`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}access` (
  `idaccess` INT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  `login` VARCHAR(100) NOT NULL,
  `idsite` INT(10) UNSIGNED NOT NULL,
  `access` VARCHAR(50) NULL DEFAULT NULL,
  PRIMARY KEY (`idaccess`),
  INDEX `index_loginidsite` (`login`, `idsite`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- Failed tracking requests (invalid site, failed token_auth...), shown in the admin UI.
CREATE TABLE IF NOT EXISTS `{{prefix}}tracking_failure` (
  `idsite` BIGINT(20) UNSIGNED NOT NULL,
  `idfailure` SMALLINT(5) UNSIGNED NOT NULL,
  `date_first_occurred` DATETIME NOT NULL,
  `request_url` MEDIUMTEXT NOT NULL,
  PRIMARY KEY (`idsite`, `idfailure`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- Plugin CustomDimensions: which custom_dimension_N column holds which dimension of a site.
CREATE TABLE IF NOT EXISTS `{{prefix}}custom_dimensions` (
  `idcustomdimension` BIGINT(20) UNSIGNED NOT NULL,
  `idsite` BIGINT(20) UNSIGNED NOT NULL,
  `name` VARCHAR(100) NOT NULL,
  `index` SMALLINT(5) UNSIGNED NOT NULL,
  `scope` VARCHAR(10) NOT NULL,
  `active` TINYINT(3) UNSIGNED NOT NULL DEFAULT 0,
  `extractions` TEXT NOT NULL DEFAULT '',
  `case_sensitive` TINYINT(3) UNSIGNED NOT NULL DEFAULT 1,
  PRIMARY KEY (`idcustomdimension`, `idsite`),
  UNIQUE KEY `uniq_hash` (`idsite`, `scope`, `index`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- ---------------------------------------------------------------------------------------------
-- Archiving, locks and sequences
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS `{{prefix}}archive_invalidations` (
  `idinvalidation` BIGINT(20) UNSIGNED NOT NULL AUTO_INCREMENT,
  `idarchive` INT(10) UNSIGNED NULL DEFAULT NULL,
  `name` VARCHAR(255) NOT NULL,
  `idsite` INT(10) UNSIGNED NOT NULL,
  `date1` DATE NOT NULL,
  `date2` DATE NOT NULL,
  `period` TINYINT(3) UNSIGNED NOT NULL,
  `ts_invalidated` DATETIME NULL DEFAULT NULL,
  `ts_started` DATETIME NULL DEFAULT NULL,
  `status` TINYINT(1) UNSIGNED NULL DEFAULT 0,
  `report` VARCHAR(255) NULL DEFAULT NULL,
  PRIMARY KEY (`idinvalidation`),
  INDEX `index_idsite_dates_period_name` (`idsite`, `date1`, `period`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}locks` (
  `key` VARCHAR(70) NOT NULL,
  `value` VARCHAR(255) NULL DEFAULT NULL,
  `expiry_time` BIGINT(20) UNSIGNED NULL DEFAULT 9999999999,
  PRIMARY KEY (`key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}sequence` (
  `name` VARCHAR(120) NOT NULL,
  `value` BIGINT(20) UNSIGNED NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- Plugin QueuedTracking's MySQL backend (used when backend = "mysql" instead of Redis).
CREATE TABLE IF NOT EXISTS `{{prefix}}queuedtracking_queue` (
  `queue_key` VARCHAR(70) NOT NULL,
  `queue_value` VARCHAR(255) NULL DEFAULT NULL,
  `expiry_time` BIGINT(20) UNSIGNED NULL DEFAULT 9999999999,
  PRIMARY KEY (`queue_key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

-- ---------------------------------------------------------------------------------------------
-- UI, users and plugins (not read by the tracker; created so a database built from this file
-- is a complete Matomo database)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS `{{prefix}}brute_force_log` (
  `id_brute_force_log` BIGINT(11) NOT NULL AUTO_INCREMENT,
  `ip_address` VARCHAR(60) NULL DEFAULT NULL,
  `attempted_at` DATETIME NOT NULL,
  `login` VARCHAR(100) NULL DEFAULT NULL,
  PRIMARY KEY (`id_brute_force_log`),
  INDEX `index_ip_address` (`ip_address`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}changes` (
  `idchange` INT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  `created_time` DATETIME NOT NULL,
  `plugin_name` VARCHAR(60) NOT NULL,
  `version` VARCHAR(20) NOT NULL,
  `title` VARCHAR(255) NOT NULL,
  `description` TEXT NULL DEFAULT NULL,
  `link_name` VARCHAR(255) NULL DEFAULT NULL,
  `link` VARCHAR(255) NULL DEFAULT NULL,
  PRIMARY KEY (`idchange`),
  UNIQUE KEY `unique_plugin_version_title` (`plugin_name`, `version`, `title`(100))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}logger_message` (
  `idlogger_message` INT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  `tag` VARCHAR(50) NULL DEFAULT NULL,
  `timestamp` TIMESTAMP NULL DEFAULT NULL,
  `level` VARCHAR(16) NULL DEFAULT NULL,
  `message` TEXT NULL DEFAULT NULL,
  PRIMARY KEY (`idlogger_message`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}privacy_logdata_anonymizations` (
  `idlogdata_anonymization` BIGINT(20) UNSIGNED NOT NULL AUTO_INCREMENT,
  `idsites` TEXT NULL DEFAULT NULL,
  `date_start` DATETIME NOT NULL,
  `date_end` DATETIME NOT NULL,
  `anonymize_ip` TINYINT(1) UNSIGNED NOT NULL DEFAULT 0,
  `anonymize_location` TINYINT(1) UNSIGNED NOT NULL DEFAULT 0,
  `anonymize_userid` TINYINT(1) UNSIGNED NOT NULL DEFAULT 0,
  `unset_visit_columns` TEXT NOT NULL DEFAULT '',
  `unset_link_visit_action_columns` TEXT NOT NULL DEFAULT '',
  `output` MEDIUMTEXT NULL DEFAULT NULL,
  `scheduled_date` DATETIME NULL DEFAULT NULL,
  `job_start_date` DATETIME NULL DEFAULT NULL,
  `job_finish_date` DATETIME NULL DEFAULT NULL,
  `requester` VARCHAR(100) NOT NULL DEFAULT '',
  PRIMARY KEY (`idlogdata_anonymization`),
  INDEX `job_start_date` (`job_start_date`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}report` (
  `idreport` INT(11) NOT NULL AUTO_INCREMENT,
  `idsite` INT(11) NOT NULL,
  `login` VARCHAR(100) NOT NULL,
  `description` VARCHAR(255) NOT NULL,
  `idsegment` INT(11) NULL DEFAULT NULL,
  `period` VARCHAR(10) NOT NULL,
  `hour` TINYINT(4) NOT NULL DEFAULT 0,
  `type` VARCHAR(10) NOT NULL,
  `format` VARCHAR(10) NOT NULL,
  `reports` TEXT NOT NULL,
  `parameters` TEXT NULL DEFAULT NULL,
  `ts_created` TIMESTAMP NULL DEFAULT NULL,
  `ts_last_sent` TIMESTAMP NULL DEFAULT NULL,
  `deleted` TINYINT(4) NOT NULL DEFAULT 0,
  `evolution_graph_within_period` TINYINT(4) NOT NULL DEFAULT 0,
  `evolution_graph_period_n` INT(11) NOT NULL,
  `period_param` VARCHAR(10) NULL DEFAULT NULL,
  PRIMARY KEY (`idreport`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}report_subscriptions` (
  `idreport` INT(11) NOT NULL,
  `token` VARCHAR(100) NULL DEFAULT NULL,
  `email` VARCHAR(100) NOT NULL,
  `ts_subscribed` TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP,
  `ts_unsubscribed` TIMESTAMP NULL DEFAULT NULL,
  PRIMARY KEY (`idreport`, `email`),
  UNIQUE KEY `unique_token` (`token`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}segment` (
  `idsegment` INT(11) NOT NULL AUTO_INCREMENT,
  `name` VARCHAR(255) NOT NULL,
  `definition` TEXT NOT NULL,
  `hash` CHAR(32) NULL DEFAULT NULL,
  `login` VARCHAR(100) NOT NULL,
  `enable_all_users` TINYINT(4) NOT NULL DEFAULT 0,
  `enable_only_idsite` INT(11) NULL DEFAULT NULL,
  `auto_archive` TINYINT(4) NOT NULL DEFAULT 0,
  `ts_created` TIMESTAMP NULL DEFAULT NULL,
  `ts_last_edit` TIMESTAMP NULL DEFAULT NULL,
  `deleted` TINYINT(4) NOT NULL DEFAULT 0,
  PRIMARY KEY (`idsegment`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}session` (
  `id` VARCHAR(191) NOT NULL,
  `modified` INT(11) NULL DEFAULT NULL,
  `lifetime` INT(11) NULL DEFAULT NULL,
  `data` MEDIUMTEXT NULL DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}twofactor_recovery_code` (
  `idrecoverycode` BIGINT(20) UNSIGNED NOT NULL AUTO_INCREMENT,
  `login` VARCHAR(100) NOT NULL,
  `recovery_code` VARCHAR(40) NOT NULL,
  PRIMARY KEY (`idrecoverycode`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}user_dashboard` (
  `login` VARCHAR(100) NOT NULL,
  `iddashboard` INT(11) NOT NULL,
  `name` VARCHAR(100) NULL DEFAULT NULL,
  `layout` TEXT NOT NULL,
  PRIMARY KEY (`login`, `iddashboard`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE IF NOT EXISTS `{{prefix}}user_language` (
  `login` VARCHAR(100) NOT NULL,
  `language` VARCHAR(10) NOT NULL,
  `use_12_hour_clock` TINYINT(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (`login`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci ROW_FORMAT=DYNAMIC;
